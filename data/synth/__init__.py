"""Building blocks of the synthetic face-skin benchmark (see data/synthetic.py and data/README.md).

- `skin`: Fitzpatrick type <-> ITA bins, skin colour sampling, texture noise banks.
- `conditions`: per-subject labels (age, acne severity, co-occurrence, label noise).
- `face`: face geometry, height field, albedo layers and shading in a canonical frame.
- `lesions`: acne, hyperpigmentation and wrinkles painted onto the skin, with their masks.
- `camera`: background, pose warp, light colour, noise and JPEG encoding.
"""
