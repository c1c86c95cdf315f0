"""embodied: train robot policies in MuJoCo from rewards you do not hand-write."""

__version__ = "0.1.0"
