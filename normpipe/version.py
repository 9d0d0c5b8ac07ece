"""normpipe's version, the one place it is written.

setup.py reads this file as text (building a wheel must not import
TensorFlow), `normpipe.__version__` imports it, `normpipe --version` prints
it and every `normpipe run` records it in run.json.
"""

__version__ = "0.3.0"
