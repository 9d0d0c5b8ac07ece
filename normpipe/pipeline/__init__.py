"""The wiring: command line, configuration and the Beam graphs that call the stages.

May import every layer but `normpipe.tfx`; nothing below imports it.
"""
