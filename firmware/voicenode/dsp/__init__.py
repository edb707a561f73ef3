"""The audio front end: params (must match training), tables, viper kernels, Frontend."""
