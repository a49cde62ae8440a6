"""Every name params.yaml can choose from, one list per concept, without Keras.

The params schema (:mod:`refinelab.params.schema`) accepts exactly these names, and each Keras-side
registry (:class:`refinelab.core.registry.Registry`) refuses to register a name missing here and fails
at import when one of these has no builder. Adding a dataset, an augmentation op, an optimizer or a
transfer base is a line here plus its builder. Architecture types are the spec classes of the schema
(:data:`refinelab.params.schema.ARCHITECTURE_SPECS`), one per type.
"""

# Dataset loaders (refinelab.prepare.sources).
DATASETS = ("fashion_mnist", "mnist", "digits", "h5", "image_folder", "filename_labels")

# Augmentation ops (refinelab.augment.ops), each with the `augment:` settings it reads (reported in
# metrics/augment.json); the first four are exact and read none.
AUGMENTATION_OPS = {
    "invert": (), "rotate90": (), "flip_horizontal": (), "flip_vertical": (),
    "rotation": ("rotation", "fill_mode", "interpolation"), "zoom": ("zoom", "fill_mode", "interpolation"),
    "shear": ("shear", "fill_mode", "interpolation"), "shift": ("shift", "fill_mode", "interpolation"),
    "brightness": ("brightness",), "contrast": ("contrast",), "noise": ("noise",), "cutout": ("cutout",),
}

# `train.optimizer` (refinelab.models.optimizers).
OPTIMIZERS = ("adam", "adamw", "sgd")

# `base:` of a transfer architecture (refinelab.models.builders).
TRANSFER_BASES = ("vgg16", "mobilenet_v2", "efficientnet_b0", "resnet50")
