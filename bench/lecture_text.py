"""Lecture paragraphs for generated continuous speech (espeak-ng reads them joined by commas:
no pause longer than a breath). Shared by bench/rooms.py and bench/transcribe.py."""

PARAGRAPHS = [
    "Today we look at how a compiler turns source code into machine instructions, starting with the lexer, "
    "which reads characters and groups them into tokens, then the parser, which builds a tree from those tokens, "
    "and finally the code generator, which walks the tree and emits instructions for the target machine",
    "A hash table stores keys and values in an array of buckets, the hash function decides which bucket a key "
    "belongs to, collisions are resolved by chaining or by open addressing, and when the table grows too full "
    "it is resized so that lookups stay close to constant time on average",
    "In thermodynamics the first law says that energy is conserved, the heat added to a system equals the change "
    "in its internal energy plus the work it does, and the second law tells us that the entropy of an isolated "
    "system never decreases, which is why heat flows from hot bodies to cold ones",
    "The French revolution began in seventeen eighty nine with a financial crisis, the estates general were called "
    "for the first time in more than a century, the third estate declared itself a national assembly, and within "
    "weeks the storming of the Bastille had become the symbol of a new political order",
    "Photosynthesis happens in the chloroplasts of plant cells, light energy splits water molecules and releases "
    "oxygen, the energy is stored in carrier molecules, and in the Calvin cycle carbon dioxide from the air is "
    "fixed into sugars that the plant uses to grow and to store energy for the night",
    "A market reaches equilibrium where the supply curve meets the demand curve, if the price is above that point "
    "sellers cannot find enough buyers and the price falls, if it is below that point buyers compete for scarce "
    "goods and the price rises, until the quantity supplied equals the quantity demanded",
    "Neural networks are built from layers of simple units, each unit computes a weighted sum of its inputs and "
    "passes it through a nonlinear function, training adjusts the weights by gradient descent on a loss, and "
    "backpropagation computes those gradients efficiently with the chain rule",
    "Plate tectonics explains why earthquakes and volcanoes gather along certain lines, the outer shell of the "
    "earth is broken into plates that float on the hotter mantle beneath, and where two plates meet they slide "
    "past each other, pull apart, or one dives beneath the other into the mantle",
]
