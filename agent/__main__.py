from relaywatch.cli import main

raise SystemExit(main())
