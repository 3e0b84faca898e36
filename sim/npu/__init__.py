"""NPU models: systolic arrays, vector units, tiling and memory service of one NPU core."""
