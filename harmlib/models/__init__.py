"""Network blocks shared by the 2D and 3D model families (each family's nets live in harmlib.<family>.model)."""
