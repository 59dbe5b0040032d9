"""Video files (written with ffmpeg, verified before they replace) and previews."""
