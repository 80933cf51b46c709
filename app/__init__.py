"""fitboard web side: settings, schemas, datasets and domain functions (no torch, no fastai)."""
