from mixviz.cli import main

raise SystemExit(main())
