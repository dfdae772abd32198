"""Files: HDF5 trajectories, exports (movies, snapshots, .vti), colour maps and 3D rendering."""
