import sys

from study.bench.main import main

sys.exit(main())
