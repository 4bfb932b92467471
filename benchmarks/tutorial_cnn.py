"""The TensorFlow tutorial CNN as a user copies it: the yardstick the train stage is timed
against (benchmarks/train_vs_tutorial.py).

    python benchmarks/tutorial_cnn.py PREPARED_DIR MODEL_FILE

Nothing of digitrec is imported: TensorFlow, the prepared arrays (the same 9,000 training
digits the train stage learns from, already scaled to [0, 1] as the tutorial's `/ 255.0`
does), the tutorial's model (Conv 32-64-64 3x3, Dense 64: `cnn3` in the registry), Adam at
its default rate, 5 epochs of Keras' default batch of 32, then one evaluation on the test
set and the model saved. The tutorial also validates on the test set after every epoch;
left out here, so the yardstick is the leaner of the two and no ratio is flattered by it.
"""

import sys

import numpy as np
import tensorflow as tf
from tensorflow.keras import layers, models

prepared, model_file = sys.argv[1], sys.argv[2]
train_images = np.load(f"{prepared}/train_images.npy")
train_labels = np.load(f"{prepared}/train_labels.npy")
test_images = np.load(f"{prepared}/test_images.npy")
test_labels = np.load(f"{prepared}/test_labels.npy")

model = models.Sequential([
    layers.Input((28, 28, 1)),
    layers.Conv2D(32, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), activation="relu"),
    layers.Flatten(),
    layers.Dense(64, activation="relu"),
    layers.Dense(10),
])
model.compile(optimizer="adam",
              loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
model.fit(train_images, train_labels, epochs=5)
test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=2)
print(f"test accuracy {test_acc:.4f}")
model.save(model_file)
