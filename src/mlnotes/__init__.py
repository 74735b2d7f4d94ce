"""mlnotes: execute, freeze and check the executable notes of a Quarto website."""

__version__ = "0.1.0"
