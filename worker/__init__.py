"""fitboard worker side: the fastai engine, its callbacks and reporters, and the CLI."""
