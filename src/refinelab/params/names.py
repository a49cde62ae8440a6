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

# `base:` of a transfer architecture (refinelab.models.builders). efficientnet_lite0's ImageNet weights
# come with refinelab's dependencies; the others' are downloaded by Keras at their first use.
TRANSFER_BASES = ("efficientnet_lite0", "vgg16", "mobilenet_v2", "efficientnet_b0", "resnet50")

# `model: auto`: the preset each dataset starts from. Photos (a folder, HDF5 photo sets) start from
# ImageNet features, which no network trained from scratch on a few hundred photos matches; the built-in
# small-image sets from the CNN tuned for them.
AUTO_PRESETS = {
    "fashion_mnist": "cnn_bn", "mnist": "cnn_bn", "digits": "cnn_bn",
    "h5": "efficientnet_lite0", "image_folder": "efficientnet_lite0", "filename_labels": "efficientnet_lite0",
}
