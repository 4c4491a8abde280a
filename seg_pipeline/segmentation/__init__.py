"""Stage 5: segmentation candidates, selection, profiles and names, lifecycle and micro-segments."""
