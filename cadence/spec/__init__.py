"""What a manager writes: sequence files, validated with file:line diagnostics."""
