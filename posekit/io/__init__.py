"""Result files and user arrays."""
