import sys

from testapp_operator.cli.commands import main

sys.exit(main())
