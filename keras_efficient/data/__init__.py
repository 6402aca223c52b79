"""Data: image loading, resize-and-pad with boxes, drawing. Never imports model code."""
