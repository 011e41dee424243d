"""Every word the embedded model's training text is built from.

Each word here must be a single token (with its leading space) in the trained
tokenizer, so that prompts such as "When Mary and John went to the store, John
gave a drink to" have one token per name and clean/corrupted prompts stay the
same length. `tokenizer.py` checks this after training.
"""

NAMES = (
    "Mary", "John", "Alice", "Bob", "Tom", "Anna", "Emma", "Lily", "Jack", "Sam",
    "Kate", "Paul", "Mark", "Lucy", "Sarah", "David", "James", "Peter", "Laura", "Ben",
    "Max", "Leo", "Mia", "Zoe", "Ella", "Noah", "Adam", "Eva", "Nina", "Oscar",
    "Ruth", "Carl", "Dan", "Fred", "Grace", "Helen", "Ivan", "Jane", "Kevin", "Linda",
)

# (country, capital): one-word names only, so each is a single token.
CAPITALS = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Greece", "Athens"), ("Egypt", "Cairo"), ("Japan", "Tokyo"),
    ("China", "Beijing"), ("Russia", "Moscow"), ("Poland", "Warsaw"), ("Austria", "Vienna"),
    ("Hungary", "Budapest"), ("Ireland", "Dublin"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Belgium", "Brussels"),
    ("Netherlands", "Amsterdam"), ("Switzerland", "Bern"), ("Czechia", "Prague"),
    ("Romania", "Bucharest"), ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"), ("Croatia", "Zagreb"),
    ("Ukraine", "Kyiv"), ("Turkey", "Ankara"), ("Iran", "Tehran"), ("Iraq", "Baghdad"),
    ("Syria", "Damascus"), ("Lebanon", "Beirut"), ("Jordan", "Amman"), ("Kenya", "Nairobi"),
    ("Nigeria", "Abuja"), ("Ghana", "Accra"), ("Senegal", "Dakar"), ("Morocco", "Rabat"),
    ("Tunisia", "Tunis"), ("Algeria", "Algiers"), ("Libya", "Tripoli"), ("Sudan", "Khartoum"),
    ("Uganda", "Kampala"), ("Tanzania", "Dodoma"), ("Zambia", "Lusaka"), ("Zimbabwe", "Harare"),
    ("Angola", "Luanda"), ("Mozambique", "Maputo"), ("Namibia", "Windhoek"),
    ("Botswana", "Gaborone"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Colombia", "Bogota"),
    ("Venezuela", "Caracas"), ("Ecuador", "Quito"), ("Uruguay", "Montevideo"),
    ("Paraguay", "Asuncion"), ("Cuba", "Havana"), ("Jamaica", "Kingston"), ("Canada", "Ottawa"),
    ("Brazil", "Brasilia"), ("Pakistan", "Islamabad"), ("Bangladesh", "Dhaka"),
    ("Nepal", "Kathmandu"), ("Afghanistan", "Kabul"), ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"), ("Laos", "Vientiane"), ("Indonesia", "Jakarta"),
    ("Philippines", "Manila"), ("Korea", "Seoul"), ("Mongolia", "Ulaanbaatar"),
    ("Kazakhstan", "Astana"), ("Uzbekistan", "Tashkent"), ("Georgia", "Tbilisi"),
    ("Armenia", "Yerevan"), ("Azerbaijan", "Baku"), ("Australia", "Canberra"), ("Fiji", "Suva"),
    ("Iceland", "Reykjavik"), ("Estonia", "Tallinn"), ("Latvia", "Riga"),
    ("Lithuania", "Vilnius"), ("Belarus", "Minsk"), ("Moldova", "Chisinau"),
    ("Albania", "Tirana"), ("Slovakia", "Bratislava"), ("Slovenia", "Ljubljana"),
    ("Qatar", "Doha"), ("Oman", "Muscat"), ("Yemen", "Sanaa"), ("Somalia", "Mogadishu"),
    ("Rwanda", "Kigali"), ("Mali", "Bamako"), ("Niger", "Niamey"), ("Cameroon", "Yaounde"),
    ("Gabon", "Libreville"), ("Eritrea", "Asmara"), ("Malawi", "Lilongwe"),
    ("Nicaragua", "Managua"), ("Cyprus", "Nicosia"), ("Malta", "Valletta"),
)

# Words used only inside planted "needle" codes, never in the filler stories,
# so recalling them at the end of a long context can only be done by copying.
CODE_WORDS = (
    "apple", "tiger", "silver", "rocket", "violin", "pepper", "marble", "falcon", "copper",
    "lemon", "castle", "dragon", "velvet", "anchor", "comet", "cactus", "walnut", "harbor",
    "pencil", "candle", "zebra", "igloo", "mango", "orbit", "parrot", "quartz", "saddle",
    "tulip", "banjo", "cobalt", "dolphin", "ember", "fossil", "glacier", "hammer", "jungle",
    "kettle", "lantern", "magnet", "nectar", "olive", "pirate", "raven", "salmon", "trumpet",
    "wizard", "yogurt", "bamboo", "cherry", "donkey",
)
# Keys name which code a needle holds: "The blue code: tiger pencil walnut."
CODE_KEYS = (
    "blue", "red", "green", "secret", "magic", "old", "new", "gold", "night", "door", "tower",
    "box", "ship", "lab", "bank", "garden",
)

PLACES = (
    "store", "park", "school", "garden", "beach", "market", "library", "station", "house",
    "river", "forest", "farm", "office", "hospital", "restaurant", "museum", "zoo", "lake",
)
OBJECTS = (
    "drink", "book", "ball", "letter", "gift", "key", "bag", "cake", "flower", "hat",
    "box", "pen", "cup", "map", "toy", "pie", "basket", "ring", "coin", "kite",
)
ADJECTIVES = (
    "big", "small", "red", "blue", "green", "happy", "kind", "brave", "old", "young", "shiny",
    "soft", "quiet", "funny", "little", "tall", "bright", "warm", "cold", "pretty",
)
ANIMALS = ("dog", "cat", "bird", "rabbit", "fish", "horse", "duck", "frog", "mouse", "bear")
FEELINGS = ("happy", "sad", "tired", "excited", "scared", "proud", "surprised", "calm")
ACTIVITIES = (
    "play", "run", "sing", "read", "draw", "swim", "dance", "jump", "bake", "explore",
    "climb", "paint", "walk", "laugh", "help",
)
WEATHER = ("sunny", "rainy", "windy", "cloudy", "cold", "warm", "snowy", "bright")
