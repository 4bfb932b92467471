"""Reading people's pictures: a picture cleaned into digits, the model's reading of them,
file names and labels, and the outputs of a batch (CSV, metrics, contact sheet)."""
