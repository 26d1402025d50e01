from agentlog.cli import main

raise SystemExit(main())
