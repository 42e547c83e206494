"""Loads one of the official scripts in MiniMax-AI/VTP's tools/ as a module, from the checkout on
PYTHONPATH. tools/__init__.py imports a module the repository does not ship, so the script is
loaded by path rather than imported as tools.<name>."""
import importlib.util
import os
import sys


def load_tool(name):
    """The module of tools/<name>.py (e.g. "test_linear_probing_hf")."""
    relative = os.path.join("tools", name + ".py")
    script = next((os.path.join(p, relative) for p in sys.path if os.path.exists(os.path.join(p, relative))), None)
    if script is None:
        sys.exit(f"{relative} not found: put a checkout of MiniMax-AI/VTP on PYTHONPATH")
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
