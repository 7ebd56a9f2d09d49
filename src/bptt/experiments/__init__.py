"""Experiments that train several networks and write a figure and a table.

- ``experiments.tasks``: the long-range tasks side by side (``bptt experiment TASK``);
- ``experiments.vanishing``: the vanishing-gradient lab -- the plain tanh RNN, each remedy
  that keeps the architecture, LSTM and GRU on the adding problem, with lag profiles of the
  gradient before and after training (``bptt experiment vanishing``).
"""
