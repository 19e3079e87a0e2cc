"""What a run needs from the machine and meets there: devices and multi-host set-up (devices), peer
heartbeats (peers), huge pages (hugepages), one-line errors for files and full disks (files, faults).
"""
