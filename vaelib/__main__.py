from vaelib.cli import main

raise SystemExit(main(program=True))
