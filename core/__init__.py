"""roadseg's torch-free core: what every stage shares (errors, the model card, atomic writes,
hashing, image reading, metrics, the INT8 form, the version). It imports nothing of roadseg's
above it (.importlinter)."""
