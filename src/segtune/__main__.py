from segtune.cli.main import main

raise SystemExit(main())
