"""Response bodies shared by several handlers (Nova's view builders), one module per resource."""
