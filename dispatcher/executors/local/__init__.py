"""The ``local`` executor: each Job's pod run as local processes, exactly once across restarts
(``executor``), with the Job controller's bookkeeping (``status``), its state files (``statefiles``) and
the pod runner (``runner``, ``pod/``), which the test emulator's kubelet uses too."""
