"""What uses a finished run: loading it (:mod:`~aerossl.runs.loader`), predicting with it,
exporting it, mapping scenes, suggesting labels and comparing runs.

Nothing here trains; the training engine imports only the loader (a teacher, an original
network and ``model.init`` are finished runs too).
"""
