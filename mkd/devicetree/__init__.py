"""Device trees: DTB build/parse with pylibfdt (fdt.py only), DTS through dtc (dts.py).

build.py root and instance trees per profile · overlay.py tree overlays · parse.py input plans
and baselines · limits.py bounds on hostile input.
"""
