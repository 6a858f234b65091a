from roadseg.cli import main

raise SystemExit(main())
