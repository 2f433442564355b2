"""contextrast: semantic segmentation with contextual pixel contrastive learning."""

__version__ = "0.1.0"
