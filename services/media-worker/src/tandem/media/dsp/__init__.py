"""Call-audio processing for the media worker: echo, noise, gain, voice activity, resampling, meters.

Every stage is streaming in 10 ms frames with its state held per call direction in preallocated
arrays (scalars in one record of a structured dtype, per-bin values in named arrays); the Numba
kernels are compiled with ``cache=True`` and warmed up by
:func:`tandem.media.dsp.pipeline.warm_up` at worker start so the first call does not pay for
compilation.

Entry points: :class:`tandem.media.dsp.pipeline.AudioPipeline` (the whole chain at 16 or 48 kHz, on
float64 frames with ``process`` or on int16 PCM with ``process_int16``; each stage can be switched off
in :class:`~tandem.media.dsp.pipeline.PipelineConfig`), or the stages alone, e.g.
:class:`tandem.media.dsp.echo.EchoCanceller` at 16 or 48 kHz.

Compilation cache: Numba writes the compiled kernels beside these sources unless ``NUMBA_CACHE_DIR``
names another directory. A read-only install (a container image) must set ``NUMBA_CACHE_DIR`` to a
writable directory (e.g. ``/var/cache/tandem/numba``), ideally filled at image build time by running
``warm_up()`` once: a cold compile of every kernel takes one to two minutes, loading them from the
cache about a second.
"""
