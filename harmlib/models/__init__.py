"""Networks: blocks shared by 2D and 3D, one module per model family."""
