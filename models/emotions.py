"""The seven FER2013 emotion classes in the order the model outputs them."""

EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

# fer2013.csv numbers its labels 0-6 as angry, disgust, fear, happy, sad, surprise, neutral.
CSV_LABEL_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CSV_LABEL_TO_INDEX = {csv_label: EMOTIONS.index(name) for csv_label, name in enumerate(CSV_LABEL_NAMES)}

IMAGE_SIZE = 48

# The CNN sees pixel values scaled to [0, 1]; the export writes this into the ONNX metadata.
INPUT_SCALE = 1 / 255
