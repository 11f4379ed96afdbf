from flagstaff._native import Engine
