from truthloop.cli import main

raise SystemExit(main())
