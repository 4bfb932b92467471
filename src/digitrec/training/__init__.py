"""Training: one run that owns seeding, data, resume, callbacks and finishing, the loops
that plug into it (one machine, or several), the recipe, the tf.data input and the models."""
