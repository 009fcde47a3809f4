"""Virt drivers: one small interface (driver.py), one file per hypervisor, chosen by [compute] compute_driver."""
