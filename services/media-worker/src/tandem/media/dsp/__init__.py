"""Call-audio processing for the media worker: echo, noise, gain, voice activity, resampling, meters.

Every stage is streaming in 10 ms frames with its state held per call direction in preallocated
arrays; the Numba kernels are compiled with ``cache=True`` and warmed up by :func:`warm_up` at worker
start so the first call does not pay for compilation.
"""
