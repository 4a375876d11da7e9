"""``python -m rpp_gym`` is the ``rpp-gym`` command."""

from rpp_gym.cli import main

raise SystemExit(main())
