"""gbair: G-BAIR (gradient-based automated iterative recovery) for prompt tuning, in JAX/Flax."""


class SettingError(ValueError):
    """A required setting (gin macro or flag) is missing or unusable; `gbair.main` prints it as one line."""
