import sys

from bench import run, soak

sys.exit(soak.main(sys.argv[2:]) if sys.argv[1:2] == ["soak"] else run.main())
