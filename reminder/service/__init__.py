"""The long-running worker: the loaded inputs (snapshot), one pass (delivery), composing a
batch, the HTTP face, logs, metrics and the simulator.
"""
