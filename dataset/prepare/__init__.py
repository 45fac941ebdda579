"""Data preparation: a folder of raw videos -> a training set in the layout of dataset/index.py.

pipeline.py runs the stages of stages.py per video (resumable, in parallel) and writes the report (report.py);
indexing.py builds or merges the training index; layout.py says where every output lives."""
