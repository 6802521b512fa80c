from mobattn.cli import run

run()
