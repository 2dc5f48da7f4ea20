"""PLD Studio: Prompt-Level Distillation with people in the loop."""

__version__ = "0.1.0"
