"""python -m utils.synthetic: generate synthetic talking-head videos (see talking_head.main)."""
from utils.errors import cli_main
from utils.synthetic.talking_head import main

cli_main(main)
