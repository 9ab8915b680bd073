"""python -m pertok.synthetic --out DIR --num_pieces N [--seed S]"""
import sys

from pertok.synthetic.cli import main

main(sys.argv[1:])
